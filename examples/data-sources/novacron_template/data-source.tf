# The newest Ubuntu image in the catalogue.
data "novacron_template" "ubuntu" {
  os          = "ubuntu"
  most_recent = true
}

# One image by name.
data "novacron_template" "debian" {
  name = "debian-12"
}
