data "novacron_network" "core" {
  name = "core"
}

output "core_cidr" {
  value = data.novacron_network.core.cidr
}
