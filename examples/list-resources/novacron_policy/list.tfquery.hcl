# The policies that only warn.
list "novacron_policy" "warning" {
  provider = novacron

  config {
    enforcement_mode = "warn"
  }
}
