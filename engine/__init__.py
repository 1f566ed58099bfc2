"""detect: detection rules for the audit trail of Claude Enterprise organizations."""

__version__ = "0.1.0"
