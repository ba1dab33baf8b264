# One pyro host per Nomad client that has /dev/kvm: `pyro mcp serve` over streamable HTTP
# on the client's address, port 8765, path /mcp. See docs/scale-out.md (checked by
# test/deploy.test.ts).
#
# Before running:
#   - on each client with a usable /dev/kvm, set `meta { pyro_kvm = "true" }` in its client
#     config and install /usr/local/bin/pyro, qemu-system-x86_64 and setpriv;
#   - store the token: nomad var put nomad/jobs/pyro-host token=$(head -c 32 /dev/urandom | base64 | tr -d '=+/\n')
job "pyro-host" {
  type = "system"

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  constraint {
    attribute = "${meta.pyro_kvm}"
    value     = "true"
  }

  group "pyro" {
    network {
      port "mcp" {
        static = 8765
      }
    }

    service {
      name     = "pyro-mcp"
      port     = "mcp"
      provider = "nomad"

      # Every HTTP request needs the token, so the check is TCP.
      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "serve" {
      # raw_exec: pyro starts VMMs that need /dev/kvm (enable raw_exec on these clients).
      # Stopping the task ends its workspaces' supervisors too: the workspaces show as
      # stopped afterwards and workspace_start resumes them (PYRO_HOME is on the host).
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/pyro"
        args = [
          "mcp", "serve",
          "--listen", "${NOMAD_ADDR_mcp}",
          "--token-file", "${NOMAD_SECRETS_DIR}/mcp-token",
          "--profile", "workspace-core",
        ]
      }

      env {
        PYRO_HOME = "/var/lib/pyro"
      }

      template {
        data        = "{{ with nomadVar \"nomad/jobs/pyro-host\" }}{{ .token }}{{ end }}"
        destination = "${NOMAD_SECRETS_DIR}/mcp-token"
        perms       = "0600"
        change_mode = "restart"
      }

      # pyro stops listening on SIGTERM and lets calls in flight finish (10 s at most).
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
