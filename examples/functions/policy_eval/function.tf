# policy_eval returns the deny messages of a Rego module for an admission input, sorted.
locals {
  cpu_limit = <<-EOT
    package cpu

    deny contains msg if {
      input.kind == "vm"
      input.object.cpu_cores > 8
      msg := sprintf("%s asks for %d cores; at most 8", [input.object.name, input.object.cpu_cores])
    }
  EOT
}

output "denied" {
  # ["big asks for 16 cores; at most 8"]
  value = provider::novacron::policy_eval(local.cpu_limit, {
    kind   = "vm"
    action = "create"
    object = { name = "big", cpu_cores = 16, memory_gb = 32 }
  })
}

# In a check block: warns at every plan if the policy would refuse the VM it guards.
check "web_is_admitted" {
  assert {
    condition = length(provider::novacron::policy_eval(local.cpu_limit, {
      kind = "vm", action = "create", object = { name = "web", cpu_cores = 4 }
    })) == 0
    error_message = "the cpu policy would refuse web"
  }
}
