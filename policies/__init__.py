"""Policy protocol, adapters for external policies, value-guided steering."""
