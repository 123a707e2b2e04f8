"""A self-hostable server speaking the H2o (chat-ui + TGI) protocol, with an OpenAI front door."""
