FROM alpine
RUN <<EOF
echo one
echo two > /two
EOF
RUN <<-EOT
	echo chomped
	EOT
RUN cat <<EOF > /greeting
hello $HOME
EOF
RUN python3 <<EOF
print(1)
EOF
