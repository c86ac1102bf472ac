FROM alpine
RUN true
ONBUILD RUN true
