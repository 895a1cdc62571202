"""The analysts' dashboard over the alert store (`desy dashboard`)."""
