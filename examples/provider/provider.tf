terraform {
  required_providers {
    novacron = {
      source = "novacron/novacron"
    }
  }
}

# The endpoint and key can also come from NOVACRON_ENDPOINT and NOVACRON_API_KEY.
provider "novacron" {
  endpoint    = "http://localhost:8080"
  timeout     = 30
  max_retries = 4
}
