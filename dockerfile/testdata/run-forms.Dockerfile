FROM alpine:3.20 AS base
RUN echo "shell form" && ls -l /
RUN ["/bin/echo", "exec", "form"]
CMD echo default command
ENTRYPOINT ["/bin/sh", "-c"]
ENTRYPOINT exec top -b
