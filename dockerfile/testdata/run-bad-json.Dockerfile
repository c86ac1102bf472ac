FROM alpine
RUN ["/bin/echo", "unterminated
