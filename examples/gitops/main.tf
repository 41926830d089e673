# A network, a policy, two VMs and a volume on the NovaCron platform.
# The sample desired-state repository: scripts/demo.sh applies it with Terraform and
# checks it for drift with novacron-reconcile. The state lives in the platform
# (docs/guides/state-backend.md). By hand:
#   export NOVACRON_ENDPOINT=http://127.0.0.1:8080 NOVACRON_API_KEY=...
#   export TF_HTTP_ADDRESS=$NOVACRON_ENDPOINT/v1/tfstate/gitops-example
#   export TF_HTTP_LOCK_ADDRESS=$TF_HTTP_ADDRESS TF_HTTP_UNLOCK_ADDRESS=$TF_HTTP_ADDRESS
#   export TF_HTTP_PASSWORD=$NOVACRON_API_KEY   # the key only here, never in -backend-config
#   terraform init && terraform apply
terraform {
  # Address, lock and unlock address from TF_HTTP_*; the API key from TF_HTTP_PASSWORD.
  # Terraform sends the password only when a username is set; the platform ignores its value.
  backend "http" {
    username = "terraform"
  }

  required_providers {
    novacron = {
      source = "novacron/novacron"
    }
  }
}

provider "novacron" {}

variable "web_count" {
  type    = number
  default = 2
}

data "novacron_template" "ubuntu" {
  os          = "ubuntu"
  most_recent = true
}

resource "novacron_policy" "max_cores" {
  name             = "max-cores"
  type             = "cost"
  enforcement_mode = "block"
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

resource "novacron_network" "core" {
  name        = "core"
  cidr        = "10.20.0.0/24"
  dns_servers = ["10.20.0.53"]

  firewall_rule {
    direction = "ingress"
    ports     = "22"
    cidr      = "10.0.0.0/8"
  }

  firewall_rule {
    direction = "ingress"
    ports     = "80,443"
  }
}

resource "novacron_vm" "web" {
  count       = var.web_count
  name        = "web-${count.index + 1}"
  cpu_cores   = 2
  memory_gb   = 4
  template_id = data.novacron_template.ubuntu.id
  network_id  = novacron_network.core.id
  user_data   = "#cloud-config\npackages: [nginx]\n"
  metadata    = { team = "web" }
}

resource "novacron_storage" "data" {
  name        = "web-1-data"
  size_gb     = 50
  attached_to = novacron_vm.web[0].id
}

data "novacron_vm" "first" {
  name = novacron_vm.web[0].name
}

output "web_ips" {
  value = novacron_vm.web[*].ip_address
}
