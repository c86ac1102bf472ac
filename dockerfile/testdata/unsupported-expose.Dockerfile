FROM alpine
RUN true
EXPOSE 80
