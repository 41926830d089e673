resource "novacron_network" "core" {
  name         = "core"
  cidr         = "10.20.0.0/24"
  dns_servers  = ["10.20.0.53", "1.1.1.1"]
  vlan_id      = 120
  mtu          = 1500
  dhcp_enabled = true
  tags         = ["prod", "core"]

  firewall_rule {
    direction = "ingress"
    protocol  = "tcp"
    ports     = "22"
    cidr      = "10.0.0.0/8"
    action    = "allow"
  }

  firewall_rule {
    direction = "ingress"
    protocol  = "tcp"
    ports     = "80,443"
  }
}
