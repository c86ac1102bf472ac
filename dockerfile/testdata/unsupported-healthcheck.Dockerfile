FROM alpine
RUN true
HEALTHCHECK CMD true
