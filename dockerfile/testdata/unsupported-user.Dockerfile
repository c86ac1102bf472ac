FROM alpine
RUN true
USER nobody
