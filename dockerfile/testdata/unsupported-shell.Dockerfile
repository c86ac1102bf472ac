FROM alpine
RUN true
SHELL ["/bin/bash", "-c"]
