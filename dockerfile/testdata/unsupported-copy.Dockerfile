FROM alpine
RUN true
COPY . /src
