"""Credential checks shared by POP3 and SMTP submission, with brute-force protection."""

from mailplane.auth.credentials import Authenticator, AuthOutcome, AuthResult
from mailplane.auth.login_guard import LoginGuard

__all__ = ["AuthOutcome", "AuthResult", "Authenticator", "LoginGuard"]
