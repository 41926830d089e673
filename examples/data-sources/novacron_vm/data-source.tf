data "novacron_vm" "web" {
  name = "web-1"
}

output "web_ip" {
  value = data.novacron_vm.web.ip_address
}
