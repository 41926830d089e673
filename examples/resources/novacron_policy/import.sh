# Import an existing object by its platform id.
terraform import novacron_policy.max_cores pol-9a8b7c6d5e4f3a2b
