"""The deployment files under deploy/."""
