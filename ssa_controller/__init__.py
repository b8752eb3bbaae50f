"""ssa-controller: reconciles AppTask custom resources into Deployments by server-side apply."""
