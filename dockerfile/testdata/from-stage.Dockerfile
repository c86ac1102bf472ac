FROM alpine AS build
RUN true
FROM build
RUN more
