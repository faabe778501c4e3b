"""Files for running llamaswap-es as a service (the systemd unit), shipped with the package."""
