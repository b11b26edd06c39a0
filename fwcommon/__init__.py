"""What every part of the product shares and none of them owns.

Small, pure and dependency-light: the signer, the software token, the server
and the device client import from here, never from each other's packages
for these concerns.
"""
