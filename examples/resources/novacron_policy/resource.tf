resource "novacron_policy" "max_cores" {
  name             = "max-cores"
  type             = "cost"
  enforcement_mode = "block"
  priority         = 100
  description      = "No VM may ask for more than 8 cores."
  rule             = <<-REGO
    package novacron.sizing

    deny contains msg if {
      input.kind == "vm"
      input.object.cpu_cores > 8
      msg := sprintf("vm %s asks for %d cores; at most 8 are allowed", [input.object.name, input.object.cpu_cores])
    }
  REGO
}
