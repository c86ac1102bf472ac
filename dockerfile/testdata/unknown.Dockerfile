FROM alpine
FOO bar
RUN true
