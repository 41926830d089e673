resource "novacron_storage" "data" {
  name        = "web-1-data"
  size_gb     = 100
  type        = "nvme"
  encrypted   = true
  attached_to = novacron_vm.web.id
}
