FROM alpine
RUN echo hi > /hello
CMD ["/bin/cat","/hello"]
