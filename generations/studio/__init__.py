"""The filmmaker's round page, the studio: the brief, the submit form, my queue and my takes, live."""
