"""Policy jobs: a proposed change to the service's own policy, reviewed like any change."""
