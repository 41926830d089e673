# Import an existing object by its platform id.
terraform import novacron_storage.data vol-5e6f7a8b9c0d1e2f
