chmod 0755 tree/script.sh
chmod 0700 tree/private
chmod 0600 tree/private/secret
chmod 4755 tree/setuid
chmod 1777 tree/sticky
chmod 0444 tree/regular
