# Import an existing object by its platform id.
terraform import novacron_vm.web vm-3f9c0a1b2c3d4e5f
