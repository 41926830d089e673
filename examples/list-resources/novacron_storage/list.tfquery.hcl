# The volumes attached to one VM.
list "novacron_storage" "web_disks" {
  provider = novacron

  config {
    attached_to = "vm-7b2d4e61"
  }
}
