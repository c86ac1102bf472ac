FROM golang:1.22 AS build
RUN go build -o /out ./...
COPY . /src

FROM alpine:3.20 AS final
RUN echo final
CMD ["/bin/sh"]
