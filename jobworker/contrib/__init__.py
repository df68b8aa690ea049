"""Integrations with the frameworks applications already run. The core never imports these."""
