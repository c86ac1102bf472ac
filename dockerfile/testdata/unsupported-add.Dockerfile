FROM alpine
RUN true
ADD x.tar /
