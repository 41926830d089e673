# search.tfquery.hcl: the running web VMs of one network.
# terraform query -generate-config-out=generated.tf writes their import and resource blocks.
list "novacron_vm" "web" {
  provider         = novacron
  include_resource = true
  limit            = 50

  config {
    name_prefix = "web-"
    network_id  = "net-1f3a9c2e"
    status      = "running"
  }
}
