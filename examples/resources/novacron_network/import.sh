# Import an existing object by its platform id.
terraform import novacron_network.core net-0a1b2c3d4e5f6a7b
