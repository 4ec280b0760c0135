# Makes the checkout importable for pytest without installing it (CI installs it anyway).
