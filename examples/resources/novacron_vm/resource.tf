data "novacron_template" "ubuntu" {
  os          = "ubuntu"
  most_recent = true
}

resource "novacron_vm" "web" {
  name        = "web-1"
  cpu_cores   = 2
  memory_gb   = 4
  disk_gb     = 40
  template_id = data.novacron_template.ubuntu.id
  network_id  = novacron_network.core.id
  power_state = "running"
  user_data   = file("${path.module}/cloud-init.yaml")

  metadata = {
    team = "web"
    env  = "prod"
  }
  tags = ["web"]

  timeouts {
    create = "10m"
    delete = "5m"
  }
}
