"""Accounting integrations: Sage (v3.1, OAuth2) in `sage/`, Sage One AUS (2.0.0) in `sage_one_aus/`."""
