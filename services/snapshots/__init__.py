"""The snapshot control plane: domain, application, workflow, relay, projection, edges."""
