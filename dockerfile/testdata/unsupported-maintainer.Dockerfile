FROM alpine
RUN true
MAINTAINER me
