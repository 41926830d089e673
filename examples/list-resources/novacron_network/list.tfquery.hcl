# Every network whose name starts with "prod-".
list "novacron_network" "prod" {
  provider = novacron

  config {
    name_prefix = "prod-"
  }
}
