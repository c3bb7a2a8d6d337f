"""The boot stage: QEMU runs judged from the console, login sessions and the boot cache."""
