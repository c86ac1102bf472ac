FROM alpine
ENV A=1 B=2
ENV C 3 4
ENV D="quoted value" E=un\ quoted
ENV PATH=/opt/bin:$PATH
WORKDIR /x/$A
LABEL maintainer="me" version=${B}
