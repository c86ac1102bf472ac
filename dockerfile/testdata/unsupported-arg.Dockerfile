FROM alpine
RUN true
ARG X=1
