ln tree/file tree/hardlink
mkdir -p tree/empty tree/nested/empty
chmod 0750 tree/empty
: > tree/empty-file
