FROM alpine
RUN true
VOLUME /data
