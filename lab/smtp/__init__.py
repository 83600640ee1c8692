"""Provides the SMTP adapter: aiosmtpd listeners that capture mail and never deliver it."""
