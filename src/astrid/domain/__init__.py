"""Domain rules shared by the CLI, the API and the workers.

``status``        the observation processing-status machine
``events``        domain events, the transactional outbox and its dispatcher
``observations``  coordinate validation, airmass, repository queries and the service layer
"""
