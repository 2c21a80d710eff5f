"""The filmmaker's gallery: my takes by round, circle and note, a round's shared gallery, compare,
remix, and the downloads (ZIP of circled takes, CSV, contact sheet)."""
